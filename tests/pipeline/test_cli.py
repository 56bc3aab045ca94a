"""The one informative line of a TF error, for the one-line errors of every command."""

from __future__ import annotations

from pipeline import cli


def test_tf_error_summary_finds_the_informative_line():
    graph_error = (
        "Graph execution error:\n\nDetected at node Foo defined at (most recent call last):\n"
        '  File "x.py", line 1\n{{function_node __inference_f_1}} Invalid JPEG data, size 300\n'
        "\t [[{{node DecodeJpeg}}]] [Op:__inference_f_1]"
    )
    assert cli.tf_error_summary(graph_error) == "Invalid JPEG data, size 300"
    asserted = "{{function_node f}} assertion failed: [image has more pixels than its header announced] [Condition x <= y]"
    assert cli.tf_error_summary(asserted) == "image has more pixels than its header announced"
    eager_read = ("{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:localhost/replica:0/task:0/"
                  "device:CPU:0}} corrupted record at 3673029 [Op:IteratorGetNext] name: ")
    assert cli.tf_error_summary(eager_read) == "corrupted record at 3673029"
