"""Minimal double of AUTOMATIC1111/stable-diffusion-webui:modules/sd_hijack.py: ``model_hijack.comments``.

The Lora double reports "Lora not found: x" here, and processing copies these comments into ``p.comments``
(as the real processing does).
"""


class EmbeddingDatabase:
    def __init__(self):
        self.word_embeddings = {}
        self.skipped_embeddings = {}

    def load_textual_inversion_embeddings(self, force_reload=False):
        pass


class StableDiffusionModelHijack:
    def __init__(self):
        self.comments = []
        self.extra_generation_params = {}
        self.embedding_db = EmbeddingDatabase()
        self.optimization_method = None

    def apply_optimizations(self, option=None):
        pass

    def hijack(self, m):
        pass

    def undo_hijack(self, m):
        pass

    def apply_circular(self, enable):
        pass

    def clear_comments(self):
        self.comments = []
        self.extra_generation_params = {}


model_hijack = StableDiffusionModelHijack()


def apply_optimizations(option=None):
    model_hijack.apply_optimizations(option)


def undo_optimizations():
    pass
