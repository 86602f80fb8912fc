"""Registers the fake preprocessors of the double (Mikubill registers them in scripts/preprocessor/*.py and
legacy/preprocessor_compiled.py). Names, labels and slider ranges follow host-api.md 4.7."""

from scripts.supported_preprocessor import Preprocessor, PreprocessorParameter


def _p(name, label=None, tags=(), sliders=(), model_free=False, resolution=True, **flags):
    p = Preprocessor(name=name, _label=label, tags=list(tags))
    for attr, slider in zip(("slider_1", "slider_2", "slider_3"), sliders, strict=False):
        setattr(p, attr, slider)
    if not resolution:
        p.slider_resolution = PreprocessorParameter(label="Resolution", minimum=64, maximum=2048, value=512, step=8,
                                                    visible=False)
    p.do_not_need_model = model_free
    for key, value in flags.items():
        setattr(p, key, value)
    if Preprocessor.get_preprocessor(p.label) is None and p.name not in Preprocessor.all_processors_by_name:
        Preprocessor.add_supported_preprocessor(p)


def _slider(label, minimum, maximum, value, step=1.0):
    return PreprocessorParameter(label=label, minimum=minimum, maximum=maximum, value=value, step=step)


_p("none", tags=[], resolution=False)
_p("canny", tags=["Canny"], sliders=[_slider("Low Threshold", 1, 255, 100), _slider("High Threshold", 1, 255, 200)])
for _name in ("openpose", "openpose_full", "openpose_face", "openpose_faceonly", "openpose_hand", "dw_openpose_full",
              "animal_openpose"):
    _p(_name, tags=["OpenPose"])
_p("depth", label="depth_midas", tags=["Depth"])
_p("depth_leres", tags=["Depth"], sliders=[_slider("Remove Near %", 0, 100, 0, 0.1),
                                           _slider("Remove Background %", 0, 100, 0, 0.1)])
_p("depth_leres++", tags=["Depth"], sliders=[_slider("Remove Near %", 0, 100, 0, 0.1),
                                             _slider("Remove Background %", 0, 100, 0, 0.1)])
for _name in ("depth_zoe", "depth_anything", "depth_anything_v2", "depth_hand_refiner"):
    _p(_name, tags=["Depth"])
_p("tile_resample", tags=["Tile"], sliders=[_slider("Down Sampling Rate", 1.0, 8.0, 1.0, 0.01)], resolution=False)
_p("tile_colorfix", tags=["Tile"], sliders=[_slider("Variation", 3.0, 32.0, 8.0, 1.0)])
_p("tile_colorfix+sharp", tags=["Tile"], sliders=[_slider("Variation", 3.0, 32.0, 8.0, 1.0),
                                                   _slider("Sharpness", 0.0, 2.0, 1.0, 0.01)])
for _name in ("inpaint", "inpaint_only", "inpaint_only+lama"):
    _p(_name, tags=["Inpaint"], accepts_mask=True, requires_mask=True)
_p("ip-adapter_clip_sd15", label="ip-adapter_clip_h", tags=["IP-Adapter"], returns_image=False, resolution=False)
_p("ip-adapter_clip_sdxl", label="ip-adapter_clip_g", tags=["IP-Adapter"], returns_image=False, resolution=False)
for _name in ("ip-adapter_clip_sdxl_plus_vith", "ip-adapter_face_id", "ip-adapter_face_id_plus", "ip-adapter-auto"):
    _p(_name, tags=["IP-Adapter"], returns_image=False, resolution=False)
_p("reference_only", tags=["Reference"], model_free=True)
# InstantID (legacy/preprocessor_compiled.py): the embedding returns no image, the keypoints one draws them
_p("instant_id_face_embedding", tags=["Instant-ID"], returns_image=False, resolution=False)
_p("instant_id_face_keypoints", tags=["Instant-ID"], resolution=False)
# PuLID (preprocessor/pulid.py): "facexlib" is one of its dependencies, registered without tags
_p("facexlib", tags=[], resolution=False)
_p("ip-adapter_pulid", tags=["IP-Adapter"], returns_image=False, resolution=False,
   preprocessor_deps=["facexlib", "instant_id_face_embedding", "EVA02-CLIP-L-14-336"])
