"""A procedural driving world written as a nuScenes-format dataset with Occ3D and OmniDrive labels.

``generate_dataset(output_dir, SynthConfig(...))`` writes a directory that the nuScenes devkit
loads like real data; see docs/synthetic-world.md.
"""

from occvla_ros.data.synth.config import SynthConfig
from occvla_ros.data.synth.generate import SynthSummary, generate_dataset

__all__ = ["SynthConfig", "SynthSummary", "generate_dataset"]
