"""The gradient-flow lab's theory and measurement: initialisers, mean-field theory, per-layer
flow measurements and the training loop. Built on the core (network, ops, losses)."""
