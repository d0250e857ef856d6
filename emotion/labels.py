"""The five emotions Emotion Lens recognises.

Code never assumes a label by position in a model's head: a model folder stores its own
`label_names`. This tuple is the order new models are trained with.
"""

EMOTIONS: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprised")
