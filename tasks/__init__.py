"""
Evaluation sets and chat-training data as Task objects (tasks/common.py has the base class and the mixture).

    pytest tests/test_tasks.py -q
"""
