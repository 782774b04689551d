import torch

from mcaclip.nn.graphs import Fp16Graph, build_graph


def test_mapping_graph_holds_the_mapping_only(tiny_editor):
    """The mapping graph is the mapping network with truncation and broadcast; its FP16 copy
    (the torch backend's) does not copy the synthesis network; it shares the generator's
    average latent."""
    g = tiny_editor.generator
    graph = build_graph(tiny_editor, "mapping")
    with torch.no_grad():
        g.latent_avg.normal_()  # shared, not copied
        z, psi = torch.randn(3, g.style_dim), torch.full((3, 1), 0.7)
        ref = g.broadcast(g.truncate(g.mapping(z), 0.7))
        torch.testing.assert_close(graph(z, psi), ref)
        half = Fp16Graph(graph)
        assert sum(p.numel() for p in half.parameters()) == sum(
            p.numel() for p in g.mapping.parameters()
        )
        torch.testing.assert_close(half(z, psi), ref, atol=2e-2, rtol=2e-2)
