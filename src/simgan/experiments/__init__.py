"""The experiments end to end: the demos (eyes §3.1, hands §3.2, digits), the ablation of §3.1
and the speed benchmark. Each builds on the public API only."""
