"""The training loop (`loop`), one run's side effects (`member`), the programs that step K members
(`programs`), checkpoints, the divergence guard, outputs and score tracking."""
