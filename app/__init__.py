"""The Gradio demo: upload a photo, see each emotion's probability and what the network looked at."""
