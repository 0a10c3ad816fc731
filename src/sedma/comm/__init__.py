"""The communication layer (NAT model, peer graph, peer selection, transport).

Empty until the communication issue lands; see ARCHITECTURE.md for its planned modules.
"""
