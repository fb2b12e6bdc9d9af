"""The core data flow: trace a model, walk its graph with the channel rules, resolve zero-invariant groups
(``GroupSpace``), choose groups towards a target, and construct the slim model."""
