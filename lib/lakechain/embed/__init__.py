"""Embed stage: corpus → documents → chunks with vectors (see ``stage.py``)."""
