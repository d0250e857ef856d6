"""The video path: frames read, faces located between detections and given identities, a
timeline of each face's emotions."""
