"""The OccVLA model: pure PyTorch, no ROS, no data or evaluation imports.

Public entry points: ``configuration.OccVLAConfig`` (presets ``"tiny"`` and
``"paligemma2-3b-224"``), ``occvla.OccVLA`` (``forward(batch, stage)``, ``predict``,
``generate_text``) and ``checkpoint.save_checkpoint`` / ``load_checkpoint``. See docs/model.md.
"""
