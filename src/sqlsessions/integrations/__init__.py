"""Drop-in session backends for agent frameworks, each in its own module, each an extra.

Importing this package imports no framework; a framework is imported only by its module:

- ``sqlsessions.integrations.openai_agents``: the OpenAI Agents SDK's ``Session``
  (``pip install 'sqlsessions[openai-agents]'``);
- ``sqlsessions.integrations.langchain``: LangChain's ``BaseChatMessageHistory``
  (``pip install 'sqlsessions[langchain]'``);
- ``sqlsessions.integrations.adk``: Google ADK's ``BaseSessionService``
  (``pip install 'sqlsessions[adk]'``);
- ``sqlsessions.integrations.pydantic_ai``: pydantic-ai message history
  (``pip install 'sqlsessions[pydantic-ai]'``).

Every adapter stores each framework item verbatim in ``messages.item`` (with its format in
``messages.item_format``) and a projection of it in the normalized columns that the Go API,
the CLI and the analytics views read.
"""
