"""The scene core: geometry, collision hulls, MJCF assembly, simulation, the task check, rendering and the abstract hand.

Pure: these modules take values and return values; none of them touches the store, the sandbox or the agent."""
