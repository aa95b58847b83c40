"""The embedded demo and the local AWS stand-in it runs on."""
