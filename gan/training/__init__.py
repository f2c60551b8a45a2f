"""The training loop and its state: the step (``steps``, ``loss``), what a run is as variables
(``state``), its checkpoints, the mode-collapse guard, G's average (``ema``), augmentation, the
data reader and what a run leaves behind (``outputs``); ``loop.Trainer`` drives them."""
