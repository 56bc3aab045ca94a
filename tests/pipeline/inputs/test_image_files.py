"""A row's image files: the one informative line of a TF codec error."""

from __future__ import annotations

from pipeline.inputs import image_files


def test_tf_error_summary_finds_the_informative_line():
    graph_error = (
        "Graph execution error:\n\nDetected at node Foo defined at (most recent call last):\n"
        '  File "x.py", line 1\n{{function_node __inference_f_1}} Invalid JPEG data, size 300\n'
        "\t [[{{node DecodeJpeg}}]] [Op:__inference_f_1]"
    )
    assert image_files.tf_error_summary(graph_error) == "Invalid JPEG data, size 300"
    asserted = "{{function_node f}} assertion failed: [image has more pixels than its header announced] [Condition x <= y]"
    assert image_files.tf_error_summary(asserted) == "image has more pixels than its header announced"
