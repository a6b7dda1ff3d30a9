"""Process and devices: meshes and multi-host start-up, the compilation cache, CPU tuning, signals,
workdir locks, and `setup.setup_runtime`, the only writer of process-wide settings."""
