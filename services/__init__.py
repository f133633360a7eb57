"""rlhf-loop: gRPC reward and policy services, their shared runtime, and the iteration controller."""
