"""Policy training: the runner the service drives, the spec it hands its worker process, and the TRL trainers."""
