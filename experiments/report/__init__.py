"""The lab's reports: one module per experiment, one function per figure, and the README
writer that words each finding from the numbers it was handed (matplotlib and pandas)."""
