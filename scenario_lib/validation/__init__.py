"""The validation pipeline: from a script's output to a verdict per stage, a report and a scenario folder."""
