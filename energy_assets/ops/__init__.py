"""Running the platform on one machine: the local daemon and webserver, the demo, and its evidence trace."""
