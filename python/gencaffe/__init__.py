"""Generative Caffe's Python tools, grouped by job: data/ (data sets as Caffe
reads them), nets/ (NetSpec net generators), experiments/ (resumable runs and
reports), hmc/ (HMC generative visualization); shared helpers at the top.
No module imports caffe at import time unless it must."""
