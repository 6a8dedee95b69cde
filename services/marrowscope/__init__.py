"""Marrowscope: bone marrow cell classification with semi-supervised rounds."""
