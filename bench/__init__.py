"""reefd benchmarks: workloads, zoo, runners"""
