"""The deployment layer (scaling and migration policies).

Empty until the deployment issue lands; see ARCHITECTURE.md for its planned modules.
"""
