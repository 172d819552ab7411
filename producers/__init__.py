"""Video sources (files now; webcams and RTSP cameras next) that push sampled frames over ZeroMQ."""
