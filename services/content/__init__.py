"""The content service: Liquid templates, variants chosen by a bandit, tracked messages."""
