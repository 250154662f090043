"""Stages that remove what should not count before anything else sees it."""
