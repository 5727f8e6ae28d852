"""Models written or configured as their authors do, for the acceptance studies (they import
torch and the libraries they need, unlike the lab's theory, measure and report modules)."""
