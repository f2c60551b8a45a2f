"""How good a generator is: KID, FID and the face rate (``metrics``), the same measured during
training and shared by the ranks (``meter``), a real-data classifier's verdict (``evaluate``),
latent arithmetic (``arithmetic``) and the digits benchmark set (``digits``)."""
