"""Photos to training-ready HDF5: MTCNN face extraction, one shard per Slurm array task."""
