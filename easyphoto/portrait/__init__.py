"""Portrait generation (reference §3.6): template analysis → fusion → pass 1 → fusion → pass 2 → colour → paste.

`pipeline.PortraitPipeline` is the algorithm, written against `easyphoto.generation.Generator`; `run` is the job
(identities, templates, outputs); `template` finds and assigns faces; `fusion` and `controls` prepare the images the
passes need; `outputs` writes PNGs with WebUI infotext; `templates` is the template gallery.
"""
