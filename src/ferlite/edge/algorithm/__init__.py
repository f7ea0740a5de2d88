"""The algorithm: one frame in, faces and their expressions out, with no I/O of its own.

detector.py (the Detector protocol, the registry, Haar, DetectSettings; detector_alt2.py a second cascade),
sweep.py (how the search for new faces is spread over frames), tracking.py (faces followed from frame to frame;
TrackSettings), runner.py (the int8 model), pipeline.py (detect or track, preprocess, classify one batch),
frames.py (what a frame must be) and native.py (native libraries' stderr and OpenCV's threads).
"""
