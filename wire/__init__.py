"""Wire formats, the bottom layer: SSE, stream reassembly, the endpoint table, multipart, credentials.

Imports nothing else from parity; everything above may import it.
"""
