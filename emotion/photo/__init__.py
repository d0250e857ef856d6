"""The photo path: faces found and cut, classified and explained, and the `Report` that says so."""
