"""Server-rendered pages: the customer's order tracking and the operators' console.

They share the API's code paths (the read model, the order's Updates, the idempotency claims);
only their answers are HTML, and their forms work without JavaScript.
"""
