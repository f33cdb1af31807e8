"""Corpora: manifests, paired and mixing datasets, VoiceBank+DEMAND, Intel N-DNS, the demo corpus."""
