"""The labelling tool: `session` sorts a pool of faces into emotions and keeps the journal; `page`
is the Gradio page and the command `python -m training.label` that serves it."""
