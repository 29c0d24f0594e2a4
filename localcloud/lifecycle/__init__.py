"""Bringing the local cloud up, down and redeploying it; reporting its status. The CLI calls these."""
