"""Evaluation: open-loop planning metrics, Occ3D occupancy, meta-actions, QA, baselines, reports.

Metrics are accumulators (``reset`` / ``update`` / ``compute``) whose docstrings give the exact
definition and convention. This package may import ``occvla_ros.data`` and ``occvla_ros.model``;
they never import it.
"""
