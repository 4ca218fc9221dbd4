"""brainjepa: Brain-JEPA, a self-supervised foundation model of brain dynamics on parcellated fMRI."""

__version__ = "0.1.0"
