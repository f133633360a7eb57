"""rlhf-loop: gRPC reward and policy services, the iteration controller, and the runtime they share.

The product lives in core/, rpc/, models/, reward/, policy/, controller/ and cli/. The demo world lives apart:
sim/ (gold scorers, simulated annotators, synthetic data, tiny models) and tools/ (local stack, demo,
benchmarks, chaos, reliability) are imported only by commands and runs that ask for them.
"""
