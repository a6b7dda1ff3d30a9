"""The `genimg` command (`main`) and its commands' helpers (`sample`, `eval`): the entry point,
where the runtime setup is applied."""
