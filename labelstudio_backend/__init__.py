"""The Label Studio ML backend: /setup, /predict (candidates pre-ranked by the reward service), /webhook into the
preference store, sync from Label Studio's export, project setup and templates, and a local Label Studio server."""
