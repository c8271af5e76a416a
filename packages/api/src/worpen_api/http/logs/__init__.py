"""The central log over HTTP: agents ship lines, operators search and follow them."""
