"""gpt_mini: a 3.37M-parameter Chinese GPT you can build, train and talk to on a CPU in one lesson."""

__version__ = "0.1.0"
