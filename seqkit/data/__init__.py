"""Data: grain pipelines, generated LRA tasks (Pathfinder/Path-X) and readers for standard corpus files."""
