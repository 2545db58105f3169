"""Test package (unique module names across tiers)."""
