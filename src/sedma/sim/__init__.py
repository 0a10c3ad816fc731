"""The discrete-event simulator backend.

Empty until the simulator issue lands; see ARCHITECTURE.md for its planned modules.
"""
