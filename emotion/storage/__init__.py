"""What lives on disk: atomic writes and journals, what a file is from its first bytes, the run
folder's layout and the model folder (timm's Hub layout) with where a model comes from."""
