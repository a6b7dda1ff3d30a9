"""The lowest layer: errors, the Family contract and registry, config fields and rule helpers,
losses, augmentations, jit/pmap-equal collectives and the train state. Imports no other layer."""
